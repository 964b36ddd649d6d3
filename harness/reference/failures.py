"""How a node fails at execution on the reference endpoint: the exception it carries and the traceback
frames ComfyUI 0.3.64 prints for it (from fixtures/captures/stock/history_j*.json).
"""

from __future__ import annotations

__all__ = ["NodeFailure", "Interrupted", "RUN_FRAMES", "RUN_FRAMES_0_33_0", "V3_CALL_FRAMES", "frame"]

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


# ComfyUI 0.33.0 (783545f): the same four frames at other lines, then a V3 node's two call wrappers
# (fixtures/captures/0.33.0/stock/history_v3_autogrow_beyond_max.json).
RUN_FRAMES_0_33_0: tuple[str, ...] = (
    '  File "/opt/ComfyUI/execution.py", line 545, in execute\n'
    "    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(prompt_id, unique_id, obj, input_data_all, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, v3_data=v3_data)\n"
    "                                                              " + "^" * 151 + "\n",
    '  File "/opt/ComfyUI/execution.py", line 344, in get_output_data\n'
    "    return_values = await _async_map_node_over_list(prompt_id, unique_id, obj, input_data_all, obj.FUNCTION, allow_interrupt=True, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, v3_data=v3_data)\n"
    "                    " + "^" * 197 + "\n",
    '  File "/opt/ComfyUI/execution.py", line 318, in _async_map_node_over_list\n    await process_inputs(input_dict, i)\n',
    '  File "/opt/ComfyUI/execution.py", line 306, in process_inputs\n    result = f(**inputs)\n             ^^^^^^^^^^^\n',
)
V3_CALL_FRAMES: tuple[str, ...] = (
    '  File "/opt/ComfyUI/comfy_api/internal/__init__.py", line 149, in wrapped_func\n'
    "    return method(locked_class, **inputs)\n           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n",
    '  File "/opt/ComfyUI/comfy_api/latest/_io.py", line 1990, in EXECUTE_NORMALIZED\n'
    "    to_return = cls.execute(*args, **kwargs)\n                ^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n",
)


class NodeFailure(Exception):
    """A node raised: the ``exception_type`` ComfyUI reports, the message and the node's own frames."""

    def __init__(self, exception_type: str, message: str, frames: tuple[str, ...] = (),
                 run_frames: tuple[str, ...] = RUN_FRAMES) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message
        self.traceback = [*run_frames, *frames]


class Interrupted(Exception):
    """``comfy.model_management.InterruptProcessingException``: POST /interrupt reached a running node."""
