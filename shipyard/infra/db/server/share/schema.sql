CREATE TABLE IF NOT EXISTS visits (id integer PRIMARY KEY, path text NOT NULL);
