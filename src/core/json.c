#include "core/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

cJSON *json_exact_number(double v) {
    if (!isfinite(v)) return cJSON_CreateNull();
    char buf[40];
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) break;
    }
    return cJSON_CreateRaw(buf);
}
