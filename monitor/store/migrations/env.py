"""Alembic environment: the engine comes from monitor (attributes) or MONITOR_DATABASE_URL."""

from alembic import context

from monitor.config import Settings
from monitor.store.db import make_engine
from monitor.store.models import Base
from monitor.store.search import is_search_index

config = context.config
engine = config.attributes.get("engine") or make_engine(Settings().database_url)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,
        # one transaction for the whole upgrade, on SQLite too (Alembic's default there commits after each
        # migration, so a second process starting at once ran the later ones beside the first)
        transactional_ddl=True,
        include_name=lambda name, type_, parents: not is_search_index(name, type_, parents),  # 0004's word index
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
