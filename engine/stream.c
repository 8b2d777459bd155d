/* stream.c: being written */
