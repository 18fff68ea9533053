CREATE TABLE sasldb (
  username text COLLATE "C" NOT NULL,
  realm    text COLLATE "C" NOT NULL,
  property text COLLATE "C" NOT NULL CHECK (property <> ''),
  value    bytea NOT NULL,
  PRIMARY KEY (username, realm, property)
) WITH (fillfactor = 50);
-- Half-full pages: a password change is a HOT update (no new index entry), so
-- changing every user's password does not rewrite the index.
-- The records that are not a plain password (SCRAM, OTP, any other secret): whether
-- the table holds any is one probe of this index, which an import of plain passwords
-- asks first (a table of passwords only leaves comparing them to the server).
CREATE INDEX sasldb_secrets ON sasldb (username, realm) WHERE property <> 'userPassword';
COMMENT ON TABLE sasldb IS 'sasldb 1: Cyrus SASL records (username, realm, property, value)';
-- Cyrus's sql plugin "deletes" by storing the text 'NULL' (saslpasswd2 -d, SASL_SET_DISABLE).
-- The sasldb tools store a real 4-byte value NULL with sasldb.keep_null set.
CREATE FUNCTION sasldb_null_means_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF coalesce(current_setting('sasldb.keep_null', true), '') <> 'on' THEN
    EXECUTE format('DELETE FROM %I.%I WHERE username = $1 AND realm = $2 AND property = $3',
                   TG_TABLE_SCHEMA, TG_TABLE_NAME)
      USING NEW.username, NEW.realm, NEW.property;
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER sasldb_null_insert AFTER INSERT ON sasldb
  FOR EACH ROW WHEN (NEW.value = 'NULL'::bytea) EXECUTE FUNCTION sasldb_null_means_delete();
CREATE TRIGGER sasldb_null_update AFTER UPDATE OF value ON sasldb
  FOR EACH ROW WHEN (NEW.value = 'NULL'::bytea) EXECUTE FUNCTION sasldb_null_means_delete();
