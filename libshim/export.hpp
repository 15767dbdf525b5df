// The mark of a function the shim exports: C linkage and default visibility
// (the library builds with -fvisibility=hidden; libmcshim.map then says
// which of these names libmcshim.so actually offers).
#pragma once

#define MCSHIM_EXPORT extern "C" __attribute__((visibility("default")))
