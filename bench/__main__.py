"""Run every benchmark and print the figures the README quotes."""

from bench import pipeline

if __name__ == "__main__":
    pipeline.report(pipeline.main())
