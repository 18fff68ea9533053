CREATE TABLE sasldb (
  username TEXT NOT NULL CHECK (typeof(username) = 'text' AND instr(CAST(username AS BLOB), x'00') = 0),
  realm    TEXT NOT NULL CHECK (typeof(realm) = 'text' AND instr(CAST(realm AS BLOB), x'00') = 0),
  property TEXT NOT NULL CHECK (typeof(property) = 'text' AND property <> '' AND instr(CAST(property AS BLOB), x'00') = 0),
  value    BLOB NOT NULL CHECK (typeof(value) IN ('text', 'blob')),
  PRIMARY KEY (username, realm, property)
) WITHOUT ROWID;
-- Cyrus's sql plugin "deletes" by storing the text 'NULL' (saslpasswd2 -d, SASL_SET_DISABLE).
CREATE TRIGGER sasldb_null_insert AFTER INSERT ON sasldb
  WHEN typeof(NEW.value) = 'text' AND NEW.value = 'NULL'
BEGIN
  DELETE FROM sasldb WHERE username = NEW.username AND realm = NEW.realm AND property = NEW.property;
END;
CREATE TRIGGER sasldb_null_update AFTER UPDATE OF value ON sasldb
  WHEN typeof(NEW.value) = 'text' AND NEW.value = 'NULL'
BEGIN
  DELETE FROM sasldb WHERE username = NEW.username AND realm = NEW.realm AND property = NEW.property;
END;
