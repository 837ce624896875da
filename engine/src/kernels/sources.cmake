# kernels/: the scalar reference and the dispatcher get no ISA flags; the x86 variants are
# added on x86-64 only (engine/CMakeLists.txt gives just those files their -m flags), and
# dispatch.c learns which variants exist through compile definitions.
list(APPEND MOE_SOURCES ${CMAKE_CURRENT_LIST_DIR}/ref.c ${CMAKE_CURRENT_LIST_DIR}/dispatch.c)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  list(APPEND MOE_ISA_SOURCES_AVX2 ${CMAKE_CURRENT_LIST_DIR}/x86/avx2.c)
  list(APPEND MOE_ISA_SOURCES_AVX512 ${CMAKE_CURRENT_LIST_DIR}/x86/avx512.c)
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/dispatch.c PROPERTIES
    COMPILE_DEFINITIONS "MOE_KERN_HAVE_AVX2;MOE_KERN_HAVE_AVX512")
endif()
