-- Gateway API keys, RAG collections/documents/chunks, and what the arena needs beyond arena_votes.

CREATE SEQUENCE seq_api_keys START 1;
CREATE SEQUENCE seq_rag_documents START 1;
CREATE SEQUENCE seq_rag_chunks START 1;
CREATE SEQUENCE seq_arena_battles START 1;

-- Keys for the /v1 gateway. Only a sha256 of the key is stored; the key itself is shown once at creation.
-- While no active key exists the gateway is open (a local single-user setup needs no key).
CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY DEFAULT nextval('seq_api_keys'),
    name VARCHAR NOT NULL UNIQUE,
    key_hash VARCHAR NOT NULL UNIQUE,
    prefix VARCHAR NOT NULL,             -- first characters, so a user can tell keys apart in `apikey list`
    revoked BOOLEAN NOT NULL DEFAULT false,
    last_used_at TIMESTAMP,
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- One collection = one faiss index on disk (db.paths.home()/rag/<name>/), vectors keyed by rag_chunks.id.
CREATE TABLE rag_collections (
    name VARCHAR PRIMARY KEY,
    embedding_model VARCHAR NOT NULL,
    dim INTEGER NOT NULL,
    chunk_size INTEGER NOT NULL,
    overlap INTEGER NOT NULL,
    index_kind VARCHAR NOT NULL DEFAULT 'flat',   -- flat | hnsw | ivf (what the persisted index is now)
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- A source file. content_hash identifies the version: re-ingesting a changed file replaces its chunks.
CREATE TABLE rag_documents (
    id BIGINT PRIMARY KEY DEFAULT nextval('seq_rag_documents'),
    collection VARCHAR NOT NULL REFERENCES rag_collections (name),
    source VARCHAR NOT NULL,             -- path as given (resolved) or jsonl path#id
    title VARCHAR,
    content_hash VARCHAR NOT NULL,
    n_chunks INTEGER NOT NULL,
    metadata JSON,
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    UNIQUE (collection, source)
);

CREATE TABLE rag_chunks (
    id BIGINT PRIMARY KEY DEFAULT nextval('seq_rag_chunks'),
    document_id BIGINT NOT NULL REFERENCES rag_documents (id),
    collection VARCHAR NOT NULL,
    ordinal INTEGER NOT NULL,            -- position in the document (0-based)
    text VARCHAR NOT NULL,
    heading VARCHAR,                     -- the nearest heading above the chunk, when the format has them
    start_char INTEGER,
    end_char INTEGER                     -- the chunk id is also its vector's id in the faiss index (IndexIDMap)
);

-- A battle: two hidden models answering the same conversation; turns are stored as JSON so the page can
-- continue a multi-turn chat. Votes (arena_votes) reference the battle in their metadata.
CREATE TABLE arena_battles (
    id BIGINT PRIMARY KEY DEFAULT nextval('seq_arena_battles'),
    model_a VARCHAR NOT NULL,
    model_b VARCHAR NOT NULL,
    rag_collection VARCHAR,
    rag_k INTEGER,
    turns JSON NOT NULL,                 -- [{"user": ..., "context": [...], "a": {...}, "b": {...}}]
    identity_leak BOOLEAN NOT NULL DEFAULT false,
    voted BOOLEAN NOT NULL DEFAULT false,
    user_id INTEGER REFERENCES users (id),
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
