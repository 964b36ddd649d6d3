"""How a node fails at execution on the reference endpoint: the exception it carries and the traceback
frames ComfyUI 0.3.64 prints for it (from fixtures/captures/stock/history_j*.json).
"""

from __future__ import annotations

__all__ = ["NodeFailure", "Interrupted", "RUN_FRAMES", "frame"]

# Every node exception passes through these four frames of execution.py (a125cd84, Python 3.11).
RUN_FRAMES: tuple[str, ...] = (
    '  File "/opt/ComfyUI/execution.py", line 496, in execute\n'
    "    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(prompt_id, unique_id, obj, input_data_all, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)\n"
    "                                                              " + "^" * 163 + "\n",
    '  File "/opt/ComfyUI/execution.py", line 315, in get_output_data\n'
    "    return_values = await _async_map_node_over_list(prompt_id, unique_id, obj, input_data_all, obj.FUNCTION, allow_interrupt=True, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)\n"
    "                    " + "^" * 209 + "\n",
    '  File "/opt/ComfyUI/execution.py", line 289, in _async_map_node_over_list\n    await process_inputs(input_dict, i)\n',
    '  File "/opt/ComfyUI/execution.py", line 277, in process_inputs\n    result = f(**inputs)\n             ^^^^^^^^^^^\n',
)


def frame(path: str, line: int, function: str, source: str, marks: str = "") -> str:
    """One formatted traceback frame, optionally with its ``^^^`` line."""
    text = f'  File "{path}", line {line}, in {function}\n    {source}\n'
    return text + (f"{marks}\n" if marks else "")


class NodeFailure(Exception):
    """A node raised: the ``exception_type`` ComfyUI reports, the message and the node's own frames."""

    def __init__(self, exception_type: str, message: str, frames: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message
        self.traceback = [*RUN_FRAMES, *frames]


class Interrupted(Exception):
    """``comfy.model_management.InterruptProcessingException``: POST /interrupt reached a running node."""
