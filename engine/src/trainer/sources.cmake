# The trainer (moe/train.h): parameter registry, forward/backward, optimizer, epochs, export.
set(MOE_TRAINER_SOURCES ${CMAKE_CURRENT_LIST_DIR}/trainer.c ${CMAKE_CURRENT_LIST_DIR}/graph.c
    ${CMAKE_CURRENT_LIST_DIR}/export.c ${CMAKE_CURRENT_LIST_DIR}/linear.c)
list(APPEND MOE_SOURCES ${MOE_TRAINER_SOURCES})
