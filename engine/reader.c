/* reader.c: being written */
