"""meaning searched in the database: a pgvector column with an HNSW index (PostgreSQL with pgvector only)

Only where the server offers the `vector` extension (pg_available_extensions) and it can be
created: then `articles.embedding_vector vector(384)`, filled from the stored `embedding` (float32
little-endian bytes) by a SQL function, kept current by a BEFORE INSERT OR UPDATE OF embedding
trigger (the pipeline writes the bytes as before), and an HNSW index for cosine distance.
Elsewhere (SQLite; a PostgreSQL without pgvector, such as Debian's) it does nothing, and meaning is
searched in memory. `monitor.store.vectors.in_database` finds the column; the models do not declare
it, so `monitor.store.search.is_search_index` hides it from Alembic's comparison.

An embedding of another width, or holding NaN or infinity (which pgvector refuses), gets no vector.
Downgrade drops the column, index, trigger and functions, and leaves the extension installed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 18:00:00
"""

import logging

from alembic import op
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)

DIMENSIONS = 384  # all-MiniLM-L6-v2

# IEEE 754 single precision by hand (PostgreSQL casts no bits to float4): sign, exponent, mantissa
_FUNCTION = f"""
CREATE OR REPLACE FUNCTION float4_bytes_to_vector(b bytea) RETURNS vector({DIMENSIONS})
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN bool_or(e = 255) THEN NULL
                ELSE array_agg((1 - 2 * s) * CASE WHEN e = 0 THEN m * 2.0::float8 ^ -149
                                                  ELSE (1 + m / 8388608.0::float8) * 2.0::float8 ^ (e - 127) END
                               ORDER BY i)::real[]::vector({DIMENSIONS}) END
    FROM (
        SELECT i, bits >> 31 AS s, (bits >> 23) & 255 AS e, bits & 8388607 AS m
        FROM (
            -- parenthesised: PostgreSQL gives | and << the same precedence, left to right
            SELECT i, get_byte(b, 4 * i)::bigint | (get_byte(b, 4 * i + 1)::bigint << 8)
                      | (get_byte(b, 4 * i + 2)::bigint << 16) | (get_byte(b, 4 * i + 3)::bigint << 24) AS bits
            FROM generate_series(0, {DIMENSIONS} - 1) AS i
        ) AS words
    ) AS parts
    WHERE length(b) = {DIMENSIONS * 4}
$$
"""
_TRIGGER_FUNCTION = """
CREATE OR REPLACE FUNCTION articles_embedding_vector() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.embedding_vector := float4_bytes_to_vector(NEW.embedding);
    RETURN NEW;
END
$$
"""
_TRIGGER = """
CREATE TRIGGER articles_embedding_vector BEFORE INSERT OR UPDATE OF embedding ON articles
FOR EACH ROW EXECUTE FUNCTION articles_embedding_vector()
"""


def _vector_extension() -> bool:
    """Whether pgvector is installed, creating it when the server offers it (and the user may)."""
    bind = op.get_bind()
    if bind.scalar(text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")):
        return True
    if not bind.scalar(text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")):
        return False
    try:
        with bind.begin_nested():
            bind.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
    except DBAPIError as error:
        log.warning("pgvector is available but could not be created (%s): meaning is searched in memory", error.orig)
        return False
    return True


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql" or not _vector_extension():
        return
    op.execute(f"ALTER TABLE articles ADD COLUMN embedding_vector vector({DIMENSIONS})")
    op.execute(_FUNCTION)
    op.execute(_TRIGGER_FUNCTION)
    op.execute(_TRIGGER)
    op.execute("UPDATE articles SET embedding_vector = float4_bytes_to_vector(embedding) WHERE embedding IS NOT NULL")
    op.execute("CREATE INDEX ix_articles_embedding_vector ON articles USING hnsw (embedding_vector vector_cosine_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS articles_embedding_vector ON articles")
    op.execute("DROP FUNCTION IF EXISTS articles_embedding_vector()")
    op.execute("ALTER TABLE articles DROP COLUMN IF EXISTS embedding_vector")  # and its index
    op.execute("DROP FUNCTION IF EXISTS float4_bytes_to_vector(bytea)")
