# Fails unless DOC contains the whole text of SOURCE verbatim.
file(READ "${DOC}" doc)
file(READ "${SOURCE}" src)
string(FIND "${doc}" "${src}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "${DOC} does not contain ${SOURCE} verbatim; paste the current file into it")
endif()
message(STATUS "${DOC} shows ${SOURCE} as it compiles")
