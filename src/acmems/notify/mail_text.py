"""The mail an event becomes: written for a person. Pure."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["mail_body", "mail_subject"]

_SUBJECTS = {
    "issued": "certificate issued for {names}",
    "failed": "certificate issuance FAILED for {names}",
    "overdue": "certificate renewal OVERDUE for {names}",
    "expiring": "certificate EXPIRING soon for {names}",
    "not-picked-up": "renewed certificate for {names} not picked up by {client}",
}

_WHAT_TO_DO = {
    "issued": "Nothing to do.",
    "failed": (
        "acmems tries again by itself. If the error names DNS, check that the zone accepts acmems' "
        "updates; if it names the CA's problem, the CA's words above say what it refused. The last "
        "certificate keeps being served while it is valid."
    ),
    "overdue": (
        "The certificate should have been renewed by now. Look at the acmems log for 'renewal of ... "
        "failed' and at the status page (GET /status) for the last error."
    ),
    "expiring": (
        "Clients still ask for this certificate and it will expire soon. If renewals fail, fix the "
        "cause named in the last error; once renewed, clients get the new certificate at their next request."
    ),
    "not-picked-up": (
        "The renewed certificate is ready, but this client has not fetched it since. Check that the "
        "host runs its renewal job (its cron entry or timer posting the CSR to /sign) and can reach acmems."
    ),
}


def _names(fields: Mapping[str, object]) -> str:
    names = fields.get("names")
    return ", ".join(str(n) for n in names) if isinstance(names, list) else "?"


def mail_subject(fields: Mapping[str, object]) -> str:
    """``[acmems] <what> for <names>``."""
    kind = str(fields.get("event"))
    template = _SUBJECTS.get(kind, "{kind} for {names}")
    reminder = " (reminder)" if fields.get("reminder") else ""
    text = template.format(names=_names(fields), client=fields.get("client", "?"), kind=kind)
    return f"[acmems] {text}{reminder}"


def mail_body(fields: Mapping[str, object]) -> str:
    """What happened, the CA's words, the next attempt, the expiry and what to do."""
    kind = str(fields.get("event"))
    lines = [f"Event:        {kind}", f"Names:        {_names(fields)}", f"When:         {fields.get('time')}"]
    lines.append(f"Auth block:   {fields.get('block')}")
    labels = (
        ("error", "Error"),
        ("attempt", "Attempt"),
        ("next_attempt", "Next attempt"),
        ("client", "Client"),
        ("fetched", "It fetched"),
        ("renewed", "Renewed at"),
        ("serial", "Serial"),
        ("profile", "Profile"),
        ("renewal_point", "Renewal from"),
        ("not_after", "Expires"),
        ("since", "Since"),
    )
    for key, label in labels:
        value = fields.get(key)
        if value is not None and value != "":
            lines.append(f"{label + ':':<14}{value}")
    if fields.get("repeats"):
        lines.append(
            f"And {fields['repeats']} more failures since {fields.get('repeats_since')} that sent no event "
            "of their own ([notify] repeat-failed)."
        )
    lines += ["", _WHAT_TO_DO.get(kind, ""), "", f"Event id: {fields.get('id')}"]
    return "\n".join(lines) + "\n"
