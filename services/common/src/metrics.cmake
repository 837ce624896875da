# The observability part of svc_common: the metrics registry, histograms and the HTTP endpoint
# (/metrics, /healthz, /readyz, /info). Owned by the metrics/HTTP part, included by
# services/common/CMakeLists.txt like every src/*.cmake list.
list(APPEND SVC_COMMON_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/histogram.c
  ${CMAKE_CURRENT_LIST_DIR}/http.c
  ${CMAKE_CURRENT_LIST_DIR}/metrics.c)

# http.c needs libmicrohttpd. The svc_common target is created after the *.cmake lists are
# read, so the link is deferred to the end of this directory.
cmake_language(DEFER CALL target_link_libraries svc_common PUBLIC PkgConfig::MHD)
