# The runtime core of svc_common: errors, logging, configuration, Kafka, PostgreSQL.
list(APPEND SVC_COMMON_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/error.c
  ${CMAKE_CURRENT_LIST_DIR}/log.c
  ${CMAKE_CURRENT_LIST_DIR}/config.c)
list(APPEND SVC_COMMON_SOURCES ${CMAKE_CURRENT_LIST_DIR}/kafka.c)
list(APPEND SVC_COMMON_SOURCES ${CMAKE_CURRENT_LIST_DIR}/db.c)
list(APPEND SVC_COMMON_SOURCES ${CMAKE_CURRENT_LIST_DIR}/loop.c)
