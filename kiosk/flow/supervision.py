"""The flow and module supervision, joined: a module going down pauses the step
that needs it, coming back resumes it, and a fault the flow meets is reported at
once rather than at supervision's next look."""

from __future__ import annotations

import logging
from collections.abc import Callable

from kiosk.drivers.base import Module, ModuleKind
from kiosk.flow.machine import EnrollmentFlow
from kiosk.health.audit import AuditEvent
from kiosk.health.supervisor import ModuleStatus, StationSupervisor

log = logging.getLogger(__name__)


def follow_supervision(flow: EnrollmentFlow, supervision: StationSupervisor) -> Callable[[], None]:
    """Keep ``flow`` told of ``supervision``'s module statuses; returns the unsubscribe.

    Each unit of indicators that comes up gets its call button wired to the
    operator call and, where it has a case switch, an opened case calls the
    operator and is written to the audit log.
    """

    def on_status(kind: ModuleKind, status: ModuleStatus, module: Module | None, _: str) -> None:
        if status is ModuleStatus.DOWN:
            flow.module_down(kind)
        elif status is ModuleStatus.UP:
            if kind is ModuleKind.INDICATORS and module is not None:
                wire_indicators(module)
            flow.module_up(kind)

    def wire_indicators(indicators: Module) -> None:
        def case_opened() -> None:  # on the indicators' own thread
            log.warning("the kiosk's case was opened")
            supervision.audit.record(
                AuditEvent.TAMPER,
                ModuleKind.INDICATORS,
                new=indicators.info(),
                detail="case opened",
            )
            flow.call_operator()

        try:
            indicators.on_call_button(flow.call_operator)
            if hasattr(indicators, "on_tamper"):  # only units with a case switch
                indicators.on_tamper(case_opened)
        except Exception:
            log.exception("the new indicators' button or case switch did not wire up")

    flow.report_fault = supervision.report_fault
    return supervision.subscribe(on_status)
