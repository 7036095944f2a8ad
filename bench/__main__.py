"""Run every benchmark and print the figures the README quotes."""

from bench import archive, distributed, embedding, latency, pipeline, soak, stories, topic

if __name__ == "__main__":
    topic.report(topic.main())
    stories.report(stories.main())
    embedding.report(embedding.main())
    pipeline.report(pipeline.main())
    latency.report(latency.main())
    archive.report(archive.main())
    distributed.report(distributed.main())
    soak.report(soak.main())
