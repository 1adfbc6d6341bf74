"""The restart rule of dead workers (pure)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.workers.restarts import Deaths, RestartPolicy, after_death, is_crash_loop

POLICY = RestartPolicy(initial_delay=0.5, max_delay=30.0, stable_after=30.0, loop_after=5)


class RestartPolicyTests(SynchronousTestCase):
    """When a worker comes back, and when its deaths are a crash loop."""

    def test_a_death_after_a_stable_run_restarts_at_once(self) -> None:
        """A worker that ran 30 s or more is restarted without delay; the count resets."""
        deaths, delay = after_death(POLICY, Deaths(quick=3, total=3), ran_for=45.0)
        self.assertEqual((deaths, delay), (Deaths(quick=0, total=4), 0.0))

    def test_quick_deaths_double_the_delay_up_to_the_maximum(self) -> None:
        """0.5, 1, 2, 4 … seconds, never more than ``max_delay``."""
        deaths, delays = Deaths(), []
        for _ in range(10):
            deaths, delay = after_death(POLICY, deaths, ran_for=1.0)
            delays.append(delay)
        self.assertEqual(delays[:4], [0.5, 1.0, 2.0, 4.0])
        self.assertEqual(delays[-1], 30.0)
        self.assertEqual(deaths, Deaths(quick=10, total=10))

    def test_five_quick_deaths_in_a_row_are_a_crash_loop(self) -> None:
        """Four are not yet; a stable run ends the loop."""
        self.assertFalse(is_crash_loop(POLICY, Deaths(quick=4, total=4)))
        self.assertTrue(is_crash_loop(POLICY, Deaths(quick=5, total=5)))
        deaths, _ = after_death(POLICY, Deaths(quick=7, total=7), ran_for=60.0)
        self.assertFalse(is_crash_loop(POLICY, deaths))
