"""A sample news site served from localhost, for the demo, the benchmark and the tests."""
