# Layers: linear (fp32 / q8_0 / q4_0), norms, activations, SwiGLU, conv1d, windowed attention.
list(APPEND MOE_SOURCES ${CMAKE_CURRENT_LIST_DIR}/linear.c ${CMAKE_CURRENT_LIST_DIR}/norm-act.c
     ${CMAKE_CURRENT_LIST_DIR}/conv-attn.c)
