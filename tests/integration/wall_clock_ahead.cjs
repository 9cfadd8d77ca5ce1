// Test-only preload: the wall clock (Date.now) runs CDC_TEST_WALL_CLOCK_AHEAD_S ahead of the
// monotonic one (performance.now), as it does after a VM is suspended and resumed or the
// clock is stepped forward (nodejs/node#47724). Used by test_kinesis_mock_patch.py.
'use strict';
const aheadMs = 1000 * Number(process.env.CDC_TEST_WALL_CLOCK_AHEAD_S || 0);
const now = Date.now;
Date.now = () => now() + aheadMs;
