#include "number.h"

#include <stddef.h>

static uint8_t is_digit(char c) { return c >= '0' && c <= '9'; }

uint8_t parse_e6(const char *s, int64_t *out) {
    uint8_t neg = 0, any = 0;
    while (*s == ' ') s++;
    if (*s == '-' || *s == '+') neg = (*s++ == '-');
    int64_t whole = 0;
    while (is_digit(*s)) {
        if (whole > 100000000000LL) return 0; /* far beyond any sane axis value */
        whole = whole * 10 + (*s++ - '0');
        any = 1;
    }
    int64_t frac = 0, scale = E6;
    uint8_t round_up = 0;
    if (*s == '.') {
        s++;
        while (is_digit(*s)) {
            any = 1;
            if (scale > 1) {
                scale /= 10;
                frac += (int64_t)(*s - '0') * scale;
            } else if (scale == 1) {
                round_up = (*s >= '5'); /* the 7th decimal rounds the 6th */
                scale = 0;
            }
            s++;
        }
    }
    if (!any) return 0;
    int64_t v = whole * E6 + frac + round_up;
    *out = neg ? -v : v;
    return 1;
}

uint8_t parse_i32(const char *s, int32_t *out) {
    int64_t v;
    if (!parse_e6(s, &v)) return 0;
    v /= E6;
    if (v > 2147483647LL || v < -2147483647LL) return 0;
    *out = (int32_t)v;
    return 1;
}

const char *word(const char *cmd, char letter) {
    const char *p = cmd;
    while (*p && *p != ' ') p++; /* skip the command code */
    char lower = (char)(letter + ('a' - 'A'));
    for (; *p; p++) {
        if ((*p == letter || *p == lower) && (p[-1] == ' ')) return p + 1;
    }
    return NULL;
}
