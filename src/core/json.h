// JSON helpers over cJSON.
#ifndef TYCHO_CORE_JSON_H
#define TYCHO_CORE_JSON_H

#include <cjson/cJSON.h>

// A number node printed with the fewest digits that read back to exactly v
// (cJSON's own printing may drop the 16th and 17th digits). NULL on OOM;
// non-finite values become null, which JSON can carry.
cJSON *json_exact_number(double v);

#endif
