# The model: config schema, loading and validation, forward pass and sessions, attributions.
list(APPEND MOE_SOURCES ${CMAKE_CURRENT_LIST_DIR}/config.c ${CMAKE_CURRENT_LIST_DIR}/model.c
     ${CMAKE_CURRENT_LIST_DIR}/forward.c ${CMAKE_CURRENT_LIST_DIR}/attribute.c)
