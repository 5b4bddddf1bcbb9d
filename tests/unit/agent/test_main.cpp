#define CATCH_CONFIG_MAIN
#include "catch2_compat.h"
