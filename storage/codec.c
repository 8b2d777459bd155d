/* codec.c: being written */
