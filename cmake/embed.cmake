# Turns every ${SRC_DIR}/*.${EXT} into one C file of string constants
# (table ${TABLE}, type ms_schema_src_t of ms_schemas.h) so the binary carries
# its Avro schemas and SQL migrations and needs no file lookup at run time.
file(GLOB srcs "${SRC_DIR}/*.${EXT}")
list(SORT srcs)
set(out "/* generated from ${EXT} files by cmake/embed.cmake: do not edit */\n#include \"ms_schemas.h\"\n#include <stddef.h>\n")
set(table "const ms_schema_src_t ${TABLE}[] = {\n")
set(i 0)
foreach(f ${srcs})
  get_filename_component(name "${f}" NAME_WE)
  file(READ "${f}" body HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${body}")
  string(APPEND out "static const char s_${i}[] = {${body} 0x00};\n")
  string(APPEND table "  {\"${name}\", s_${i}},\n")
  math(EXPR i "${i} + 1")
endforeach()
string(APPEND table "  {NULL, NULL}\n};\n")
file(WRITE "${OUT_FILE}.tmp" "${out}${table}")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${OUT_FILE}.tmp" "${OUT_FILE}")
