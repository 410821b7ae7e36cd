"""Verdict: pure statistics over measured cohorts: CohortStats, interval series, compare, sequential looks,
policy and levels. Never imports the network."""
