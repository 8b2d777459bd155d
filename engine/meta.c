/* meta.c: being written */
