"""One dataset, one identity: what a sync knows comes from the dataset, not from its name.

dlt keeps a pipeline's state in the destination under the pipeline's name. A sync under another
`--pipeline-name`, or a scheduler's job re-created under a new name after its working dir was
lost, would find no state, read the whole history again and append it to the events already
there. So, after dlt has restored what it can, a sync:

1. installs the dataset's stored schema when the pipeline has none (its tables become known:
   the subjects' first sightings, the ids a filesystem load skips, the duplicate check);
2. continues the marks of the pipeline that wrote the dataset last, when it has none of its own
   (its summary names that pipeline);
3. never appends below what the dataset holds: the bound under which rows are merged rather
   than appended (`loaded_until`) is raised to just past the newest event in the dataset, which
   also covers two pipelines that take turns on one dataset.
"""

from __future__ import annotations

import copy
import logging
from datetime import datetime
from typing import Any

import dlt

from tfy_audit._compat.dlt import (
    pipeline_source_state,
    restore_stored_schema,
    sources_state,
    stored_pipeline_state,
    update_source_state,
)
from tfy_audit._core.settings import AUDIT_LOGS_TABLE, MIN_WINDOW, SOURCE_NAME
from tfy_audit._core.times import utc
from tfy_audit._source.state import LOADED_UNTIL_KEY, STREAMS_KEY, loaded_until
from tfy_audit._warehouse.adapter import warehouse_of
from tfy_audit._warehouse.readback import table_loaded

logger = logging.getLogger(__name__)

_STATE_TABLE = "_dlt_pipeline_state"


def continue_dataset(pipeline: dlt.Pipeline) -> str | None:
    """Bring the pipeline's state up to what its dataset holds (see the module's docstring);
    returns the name of the pipeline whose marks it continues, if it took another's."""
    if not pipeline.default_schema_name:
        restore_stored_schema(pipeline, SOURCE_NAME)
    continued = None
    own = _source_state(pipeline)
    if not own.get(LOADED_UNTIL_KEY) and not own.get(STREAMS_KEY):
        found = _newest_other_state(pipeline)
        if found is not None:
            continued, state = found
            update_source_state(pipeline, SOURCE_NAME, state)
            logger.info("continuing the dataset's mark from pipeline %r", continued)
    held = events_held_until(pipeline)
    seen = loaded_until(_source_state(pipeline))
    if held is not None and (seen is None or held > seen):
        logger.info(
            "the dataset holds events up to %s: rows before it are merged, never appended",
            held.isoformat(),
        )
        update_source_state(pipeline, SOURCE_NAME, {LOADED_UNTIL_KEY: held.isoformat()})
    return continued


def events_held_until(pipeline: dlt.Pipeline) -> datetime | None:
    """Just past the newest event the dataset holds (1 ms: createdAt's precision); None when
    it holds none."""
    if not table_loaded(pipeline, AUDIT_LOGS_TABLE):
        return None
    # every run asks: through the destination's SQL client where there is one, as `dataset()`
    # builds its SQL model of the schema first (the adapter reads)
    newest = warehouse_of(pipeline).newest_created_at(pipeline)
    if newest is None:
        return None
    result: datetime = utc(newest) + MIN_WINDOW
    return result


def _newest_other_state(pipeline: dlt.Pipeline) -> tuple[str, dict[str, Any]] | None:
    """The name and tfy-audit source state of the other pipeline that committed state to the
    dataset last."""
    if not table_loaded(pipeline, _STATE_TABLE):
        return None
    rows = (
        pipeline.dataset()
        .query(
            f"select pipeline_name, max(created_at) as newest from {_STATE_TABLE}"
            " group by pipeline_name order by newest desc"
        )
        .fetchall()
    )
    for name, _newest in rows:
        if name == pipeline.pipeline_name:
            continue
        state = stored_pipeline_state(pipeline, name)
        source = sources_state(state, SOURCE_NAME)
        if source:
            return str(name), copy.deepcopy(dict(source))
    return None


def _source_state(pipeline: dlt.Pipeline) -> dict[str, Any]:
    return pipeline_source_state(pipeline, SOURCE_NAME)
