"""The operator's console: what needs a decision, today's figures, the packets
waiting for the hub and the modules' health, for the operator who logged in.

It shows the station as it is, every second; a citizen calling (the call button,
a "wait for the officer" screen, a broken module) turns the banner on top red,
and its button goes back to the citizen's screen, where the decision is taken.
"""

from __future__ import annotations

from pathlib import Path

from kivy.properties import BooleanProperty, StringProperty

from kiosk.drivers.base import ModuleKind
from kiosk.flow.machine import Notice, Step
from kiosk.screens.station import StationScreen
from kiosk.store.sqlite import OPERATOR_WORDS, PacketState

TABS = ("queue", "today", "sync", "modules")


class ConsoleScreen(StationScreen):
    screen_name = "console"
    kv = Path(__file__).with_suffix(".kv")
    tab = StringProperty("queue")
    operator = StringProperty("")
    attention = BooleanProperty(False)  # a citizen needs the operator now
    body = StringProperty("")  # the open tab's lines

    def entered(self) -> None:
        self.tab = "queue"

    def show(self, tab: str) -> None:
        self.tab = tab
        self.refresh()

    def refresh(self) -> None:
        flow = self.app.flow
        login = flow.desk.login if flow.desk is not None else None
        self.operator = login.name if login else ""
        self.attention = bool(
            flow.operator_called or flow.step is Step.OPERATOR or flow.fault is not None
        )
        self.body = "\n".join(getattr(self, f"_{self.tab}")())

    def end_duty(self) -> None:
        """The operator goes home: nobody is on duty, citizens wait for the next one."""
        self.app.flow.desk.end_duty()
        self.leave()

    # -- the tabs: lines of text ------------------------------------------------

    def _queue(self) -> list[str]:
        flow, lines = self.app.flow, []
        if flow.step is Step.OPERATOR and flow.operator_reason is not None:
            reason = self.t(
                f"operator.reason.{flow.operator_reason}",
                age=flow.session.min_age_years,
                count=len(flow.enrollment.flagged_fingers) if flow.enrollment else 0,
            )
            lines.append(self.t("console.queue.held", reason=reason))
        if flow.enrollment is not None:
            for record in flow.enrollment.flagged_fingers:
                finger, why = self.t(record.finger.label_key), self.t(record.exception.label_key)
                lines.append(self.t("console.queue.finger", finger=finger, why=why))
        if flow.fault is not None:
            lines.append(self.t("console.queue.fault", module=self._kind(flow.fault)))
        if flow.operator_called and flow.step is not Step.OPERATOR:
            lines.append(self.t("console.queue.called"))
        if flow.notice is Notice.NO_ROOM:
            lines.append(self.t("welcome.notice.no_room"))
        rejected = self._backlog().get(PacketState.REJECTED, 0)
        if rejected:
            lines.append(self.t("console.queue.rejected", count=rejected))
        return lines or [self.t("console.queue.nothing")]

    def _today(self) -> list[str]:
        figures = self.app.station.figures
        if figures is None:
            return [self.t("console.unknown")]
        today = figures.current().summary()
        lines = [
            self.t(f"console.today.{key}", count=today[key])
            for key in ("enrolled", "incomplete", "retakes", "exceptions", "approvals")
        ]
        medians = today["step_median_seconds"]
        if medians:
            lines.append(self.t("console.today.medians"))
            lines += [
                f"  {self.t(f'console.steps.{step}')}: {seconds:.0f} s"
                for step, seconds in medians.items()
                if step in (s.value for s in Step)
            ]
        return lines

    def _backlog(self) -> dict[PacketState, int]:
        store = self.app.station.store
        return store.backlog() if store is not None else {}

    def _sync(self) -> list[str]:
        backlog = self._backlog()
        if not backlog:
            return [self.t("console.unknown")]
        lines = [
            f"{OPERATOR_WORDS[state]}: {backlog[state]}"
            for state in (PacketState.SEALED, PacketState.SENT, PacketState.ACKNOWLEDGED)
        ]
        lines += [
            f"{OPERATOR_WORDS[state]}: {backlog[state]}"
            for state in (PacketState.REJECTED, PacketState.QUARANTINED)
            if backlog[state]
        ]
        lines.append(self.t("console.sync.explain"))
        return lines

    def _modules(self) -> list[str]:
        flow, supervision = self.app.flow, self.app.station.supervision
        if supervision is not None:
            status = {k: (str(s), detail) for k, (s, detail, _) in supervision.status().items()}
        else:
            status = {kind: ("down" if kind in flow.down else "up", "") for kind in ModuleKind}
        lines = []
        for kind in ModuleKind:
            state, detail = status.get(kind, ("down", ""))
            line = f"{self._kind(kind)}: {self.t(f'console.modules.{state}')}"
            lines.append(f"{line} ({detail})" if detail and state != "up" else line)
        if flow.modules.simulated:
            lines.append(self.t("common.simulated"))
        return lines

    def _kind(self, kind: ModuleKind) -> str:
        return self.t(f"console.kinds.{kind}")
