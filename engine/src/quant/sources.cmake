# quant/: block formats (blocks.h, header only for now).
