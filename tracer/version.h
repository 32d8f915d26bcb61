#ifndef PTLEAK_VERSION_H
#define PTLEAK_VERSION_H
#define PTLEAK_VERSION "0.1"
#endif
