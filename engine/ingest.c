/* ingest.c: being written */
