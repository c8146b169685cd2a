"""Insert many rows with one prepared statement, skipping per-object ORM work.

For hot paths only (create_children's batches of up to 10,000 runs): Django's
bulk_create builds a model instance and prepares every field of every row in
Python, which costs more than the database work. Here the values shared by all
rows are prepared once and each row adds only what differs.
"""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, connections, models


def insert_rows(model: type[models.Model], shared: dict, rows: list[dict]) -> None:
    """INSERT len(rows) rows of `model`; a field's value comes from the row, else `shared`, else its default.

    Values are prepared with each field's own get_db_prep_save, so types match
    what the ORM would write. The primary key is left to the database.
    """
    if not rows:
        return
    connection = connections[DEFAULT_DB_ALIAS]  # the proxy would do a thread-local lookup per value
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    prepared_shared = {}
    for field in fields:
        if field.attname in shared or field.name in shared:
            value = shared.get(field.attname, shared.get(field.name))
            if isinstance(value, models.Model):
                value = value.pk
        else:
            value = field.get_default()
        prepared_shared[field.attname] = field.get_db_prep_save(value, connection)
    varying = [f for f in fields if any(f.attname in row for row in rows[:1])]
    template = [prepared_shared[f.attname] for f in fields]
    positions = [fields.index(f) for f in varying]
    params = []
    for row in rows:
        values = list(template)
        for position, field in zip(positions, varying, strict=True):
            values[position] = field.get_db_prep_save(row[field.attname], connection)
        params.append(values)
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    with connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({placeholders})", params)
