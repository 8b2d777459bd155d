/* kv.c: being written */
