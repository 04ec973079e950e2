/*
 * test_reserve.c - ORBITPY_RESERVE: a value that is not a size is refused
 * (not silently replaced by the default), and a reservation that could not
 * be made reports size 0.  The reservation is made once per process, on
 * first use, so this binary makes no area before these checks.
 *
 * Backend-specific: the address-space reservation (ORBITPY_RESERVE,
 * orbit_reservation_size()) is a userspace backend extra (see orbit.h).
 */
#include <stdlib.h>

#include "check.h"
#include "orbit.h"

static void expect_refused(const char *value)
{
	struct orbit_area *a;

	setenv("ORBITPY_RESERVE", value, 1);
	CHECK_EQ(orbit_reservation_size(), 0);
	a = orbit_area_create(1 << 16, "full");
	CHECK(a == NULL);	/* no reservation, so no room (ENOMEM) */
	if (a)
		orbit_area_destroy(a);
}

static void test_invalid_values_are_refused(void)
{
	expect_refused("lots");
	expect_refused("8X");
	expect_refused("0");
	expect_refused("-1");
	expect_refused("4G4");
	expect_refused("99999999999999999999");
	expect_refused("20000000T");	/* overflows size_t */
}

static void test_valid_value_is_used_once(void)
{
	struct orbit_area *a;

	setenv("ORBITPY_RESERVE", "1g", 1);
	CHECK_EQ(orbit_reservation_size(), 1UL << 30);
	a = orbit_area_create(1 << 16, "full");
	CHECK(a != NULL);
	/* made: a later change of the variable has no effect */
	setenv("ORBITPY_RESERVE", "2G", 1);
	CHECK_EQ(orbit_reservation_size(), 1UL << 30);
	if (a)
		orbit_area_destroy(a);
}

int main(void)
{
	check_watchdog(55);
	RUN(test_invalid_values_are_refused);
	RUN(test_valid_value_is_used_once);
	return CHECK_DONE();
}
