"""The flow and module supervision, joined: a module going down pauses the step
that needs it, coming back resumes it, and a fault the flow meets is reported at
once rather than at supervision's next look."""

from __future__ import annotations

import logging
from collections.abc import Callable

from kiosk.drivers.base import Module, ModuleKind
from kiosk.flow.machine import EnrollmentFlow
from kiosk.health.supervisor import ModuleStatus, StationSupervisor

log = logging.getLogger(__name__)


def follow_supervision(flow: EnrollmentFlow, supervision: StationSupervisor) -> Callable[[], None]:
    """Keep ``flow`` told of ``supervision``'s module statuses; returns the unsubscribe."""

    def on_status(kind: ModuleKind, status: ModuleStatus, module: Module | None, _: str) -> None:
        if status is ModuleStatus.DOWN:
            flow.module_down(kind)
        elif status is ModuleStatus.UP:
            if kind is ModuleKind.INDICATORS and module is not None:
                try:  # a new unit's call button calls the operator too
                    module.on_call_button(flow.call_operator)
                except Exception:
                    log.exception("the call button of the new indicators did not wire up")
            flow.module_up(kind)

    flow.report_fault = supervision.report_fault
    return supervision.subscribe(on_status)
