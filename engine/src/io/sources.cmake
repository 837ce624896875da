# The io module (model files: JSON, safetensors) and the core allocator and log hooks it owns.
# core/alloc.c and core/log.c live in core/ but are listed here (core/sources.cmake is owned by
# another module).
list(APPEND MOE_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/../core/alloc.c
  ${CMAKE_CURRENT_LIST_DIR}/../core/log.c
)
list(APPEND MOE_SOURCES ${CMAKE_CURRENT_LIST_DIR}/json.c)
list(APPEND MOE_SOURCES ${CMAKE_CURRENT_LIST_DIR}/safetensors.c)
