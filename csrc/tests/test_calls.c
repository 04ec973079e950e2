/*
 * test_calls.c - calls, snapshots and incremental transfer, in each mode.
 * What the orbit sees (the scenario is in scenario_calls.h); what the userspace backend counts meanwhile (pages
 * copied and reset, full syncs) is in user/test_copy_counts.c, and that a
 * mode asked for is the mode reported, in user/test_modes.c.
 */
#include "check.h"
#include "scenario_calls.h"

static void run_mode(const char *mode)
{
	scenario_calls(mode, NULL);
}

int main(void)
{
	RUN_MODES(run_mode);
	return CHECK_DONE();
}
