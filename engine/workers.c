/* workers.c: being written */
