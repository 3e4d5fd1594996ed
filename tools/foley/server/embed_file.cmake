# cmake -DINPUT=file -DOUTPUT=header.h -DSYMBOL=kName -P embed_file.cmake
# Writes a header with the file's bytes as `static const unsigned char SYMBOL[]` and
# `SYMBOL##Size`, so the binary serves the page without reading files at run time.
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hex_length)
math(EXPR size "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x..,){24})" "\\1\n  " bytes "${bytes}")
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} at build time; do not edit.\n#pragma once\n#include <cstddef>\n"
  "static const unsigned char ${SYMBOL}[] = {\n  ${bytes}0x00};\n"
  "static const size_t ${SYMBOL}Size = ${size};\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
