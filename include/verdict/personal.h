/*
 * personal.h - which input fields a bundle's policies declare personal.
 *
 * A policy marks an input field as personal information (a customer id,
 * a phone number: China's Personal Information Protection Law) in its
 * schema, beside the field's other properties:
 *
 *   customer_id = S.string{ required = true, max_len = 64, personal = true },
 *
 * `verdict history erase` removes those fields from the recorded
 * requests (docs/history.md, "Schema 5: the personal part").  The list
 * is read from the loaded policies (each kind's `fields`, national and
 * every region's), never kept in C.
 */
#ifndef VERDICT_PERSONAL_H
#define VERDICT_PERSONAL_H

#include <stddef.h>

#include "verdict/buf.h"
#include "verdict/engine.h"

/* The names of the input fields any policy of E declares personal
 * (`personal = true` in its `fields`), each once, sorted.  *names is a
 * malloc'd array of *n malloc'd strings, the caller's: free with
 * vd_personal_free().  Returns 0 or VD_ENOMEM.  Runs on E's thread. */
int vd_personal_fields(vd_engine_t *e, char ***names, size_t *n);
void vd_personal_free(char **names, size_t n);

#endif
