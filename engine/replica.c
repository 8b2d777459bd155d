/* replica.c: being written */
