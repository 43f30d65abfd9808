/* SPDX-License-Identifier: MIT */
/* RFC 5322 3.3 date-time, with the obsolete forms of 4.3: optional weekday,
 * 2-digit (+1900 if >= 50, else +2000) and 3-digit (+1900) years, missing
 * seconds, named zones, military zones (-0000: RFC 1123 got their sign
 * wrong, so 4.3 says to treat them as unknown), CFWS anywhere. Anything
 * else is reported unparseable rather than guessed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "mime/mime_int.h"

static const char *const months[12] = { "jan", "feb", "mar", "apr", "may", "jun",
					"jul", "aug", "sep", "oct", "nov", "dec" };
static const char *const wdays[7] = { "mon", "tue", "wed", "thu", "fri", "sat", "sun" };

/* Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static bool leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

struct dp {
	const uint8_t *p;
	size_t n, i;
};

static void dskip(struct dp *d)
{
	d->i = mime_skip_cfws(d->p, d->n, d->i, NULL);
}

static int number(struct dp *d, int maxdig, int *digits_r)
{
	int v = 0, k = 0;
	while (d->i < d->n && d->p[d->i] >= '0' && d->p[d->i] <= '9') {
		if (k == maxdig)
			return -1;
		v = v * 10 + (d->p[d->i++] - '0');
		k++;
	}
	*digits_r = k;
	return k ? v : -1;
}

static size_t word(struct dp *d, char *w, size_t cap)
{
	size_t k = 0;
	while (d->i < d->n && (((d->p[d->i] | 0x20) >= 'a' && (d->p[d->i] | 0x20) <= 'z'))) {
		if (k + 1 < cap)
			w[k] = (char)(d->p[d->i] | 0x20);
		k++;
		d->i++;
	}
	w[k < cap ? k : cap - 1] = 0;
	return k;
}

int mime_date_parse(const uint8_t *v, size_t n, struct mime_date *out)
{
	struct dp d = { v, n, 0 };
	char w[16];
	int digits;
	dskip(&d);
	size_t save = d.i;
	size_t wl = word(&d, w, sizeof w);
	if (wl) {
		bool ok = false;
		for (int k = 0; k < 7; k++)
			if (wl >= 3 && strncmp(w, wdays[k], 3) == 0)
				ok = true; /* "Thu" or "Thursday" */
		if (!ok)
			return -1;
		dskip(&d);
		if (d.i < d.n && d.p[d.i] == ',')
			d.i++;
		dskip(&d);
	} else {
		d.i = save;
	}
	int day = number(&d, 2, &digits);
	if (day < 1)
		return -1;
	dskip(&d);
	if (d.i < d.n && d.p[d.i] == '-')
		d.i++; /* "26-Nov-2026" seen in old mail */
	wl = word(&d, w, sizeof w);
	int mon = -1;
	for (int k = 0; k < 12; k++)
		if (wl == 3 && strcmp(w, months[k]) == 0)
			mon = k;
	if (mon < 0)
		return -1;
	dskip(&d);
	if (d.i < d.n && d.p[d.i] == '-')
		d.i++;
	int year = number(&d, 4, &digits);
	if (year < 0)
		return -1;
	if (digits == 2)
		year += year >= 50 ? 1900 : 2000;
	else if (digits == 3)
		year += 1900;
	else if (digits == 1)
		return -1;
	if (year < 1900)
		return -1; /* RFC 5322 3.3: "1900 or later" */
	dskip(&d);
	int hh = number(&d, 2, &digits);
	if (hh < 0)
		return -1;
	dskip(&d);
	if (d.i >= d.n || d.p[d.i] != ':')
		return -1;
	d.i++;
	dskip(&d);
	int mm = number(&d, 2, &digits), ss = 0;
	if (mm < 0 || digits != 2)
		return -1;
	dskip(&d);
	if (d.i < d.n && d.p[d.i] == ':') {
		d.i++;
		dskip(&d);
		ss = number(&d, 2, &digits);
		if (ss < 0 || digits != 2)
			return -1;
		dskip(&d);
	}
	static const uint8_t mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int dim = mdays[mon] + (mon == 1 && leap(year));
	if (day > dim || hh > 23 || mm > 59 || ss > 60)
		return -1;
	int tz = 0;
	bool known = true;
	if (d.i < d.n && (d.p[d.i] == '+' || d.p[d.i] == '-')) {
		int sign = d.p[d.i] == '-' ? -1 : 1;
		d.i++;
		int z = number(&d, 4, &digits);
		if (z < 0 || digits != 4 || z % 100 > 59)
			return -1;
		tz = sign * ((z / 100) * 60 + z % 100);
		if (z == 0 && sign < 0)
			known = false; /* "-0000": no information (3.3) */
	} else if (d.i < d.n) {
		wl = word(&d, w, sizeof w);
		static const struct {
			const char *n;
			int off;
		} zones[] = { { "ut", 0 },	  { "gmt", 0 },	    { "utc", 0 },    { "est", -300 },
			      { "edt", -240 }, { "cst", -360 }, { "cdt", -300 }, { "mst", -420 },
			      { "mdt", -360 }, { "pst", -480 }, { "pdt", -420 } };
		bool found = false;
		for (size_t k = 0; k < N_ELEMENTS(zones); k++)
			if (strcmp(w, zones[k].n) == 0) {
				tz = zones[k].off;
				found = true;
			}
		if (!found) {
			if (wl == 1 && w[0] != 'j')
				known = false; /* military zone: 4.3 says treat as -0000 */
			else
				return -1;
		}
	} else {
		known = false; /* no zone at all */
	}
	dskip(&d);
	if (d.i < d.n)
		return -1; /* trailing garbage */
	out->t = days_from_civil(year, (unsigned)mon + 1, (unsigned)day) * 86400 + hh * 3600 +
		 mm * 60 + ss - (int64_t)tz * 60;
	out->tz_minutes = tz;
	out->tz_known = known;
	return 0;
}
