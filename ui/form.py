"""The customer form generated from :mod:`core.schema`: labels, units, help, allowed values.

Only the schema is used here (allowed for the UI); no training code.
"""

from __future__ import annotations

from typing import Any

import streamlit as st
from pydantic import ValidationError

from core.schema import (
    EXAMPLE_CHURNER,
    EXAMPLE_LOYAL,
    FEATURES,
    SPECS,
    Customer,
    FeatureSpec,
    usage_warnings,
)

#: Defaults: a typical (loyal) customer of the training data; a likely churner as a second preset.
PRESETS: dict[str, dict[str, Any]] = {"typical": EXAMPLE_LOYAL, "churner": EXAMPLE_CHURNER}
KEY_PREFIX = "f_"

ACCOUNT_FIELDS: tuple[str, ...] = (
    "state",
    "area_code",
    "account_length",
    "international_plan",
    "voice_mail_plan",
    "number_vmail_messages",
    "number_customer_service_calls",
)
PERIODS: tuple[tuple[str, str], ...] = (
    ("day", "Day"),
    ("eve", "Evening"),
    ("night", "Night"),
    ("intl", "International"),
)


def widget_key(name: str) -> str:
    """The session-state key of a feature's widget."""
    return f"{KEY_PREFIX}{name}"


def label(spec: FeatureSpec) -> str:
    """Human label with the unit, e.g. ``Account length (days)``."""
    text = spec.bigml[0].upper() + spec.bigml[1:]
    return f"{text} ({spec.unit})" if spec.unit else text


def help_text(spec: FeatureSpec) -> str:
    """Description, allowed values or range, and the two documented examples."""
    if spec.is_numeric:
        unit = f" {spec.unit}" if spec.unit else ""
        rule = f"Range {spec.minimum:g} to {spec.maximum:g}{unit}."
    elif len(spec.allowed) <= 5:
        rule = "Allowed: " + ", ".join(format_option(spec.name, v) for v in spec.allowed) + "."
    else:
        rule = f"One of {len(spec.allowed)} codes."
    return f"{spec.description} {rule} Example: {spec.loyal} (loyal), {spec.churner} (churner)."


def format_option(name: str, value: Any) -> str:
    """How a category value is shown: ``415`` for ``area_code_415``, ``Yes``/``No`` for plans."""
    text = str(value)
    if name == "area_code":
        return text.removeprefix("area_code_")
    if text in ("yes", "no"):
        return text.capitalize()
    return text


def typed(spec: FeatureSpec, value: Any) -> Any:
    """The value with the Python type its widget needs (int, float or str)."""
    if spec.kind == "integer":
        return int(value)
    if spec.kind == "number":
        return float(value)
    return str(value)


def apply_preset(name: str) -> None:
    """Fill every widget with a preset customer (a button callback)."""
    for feature, value in PRESETS[name].items():
        st.session_state[widget_key(feature)] = typed(SPECS[feature], value)


def init_state() -> None:
    """Give every widget its default (the typical customer) once per session."""
    for spec in FEATURES:
        st.session_state.setdefault(
            widget_key(spec.name), typed(spec, PRESETS["typical"][spec.name])
        )


def feature_widget(spec: FeatureSpec, error: str | None = None) -> None:
    """Draw the input of one feature (value taken from session state by key), with ``error``
    right under it.

    Numbers are not clamped by the widget: a negative or emptied value stays what the user typed
    and the schema's message is shown next to the field (a clamped widget silently kept the old
    value, so the previous result looked current)."""
    key = widget_key(spec.name)
    if not spec.is_numeric:
        options: list[str] = list(spec.allowed)

        def shown(value: str, name: str = spec.name) -> str:
            return format_option(name, value)

        if len(options) == 2:
            st.radio(
                label(spec),
                options,
                key=key,
                horizontal=True,
                help=help_text(spec),
                format_func=shown,
            )
        else:
            st.selectbox(
                label(spec),
                options,
                key=key,
                help=help_text(spec),
                format_func=shown,
            )
    elif spec.kind == "integer":
        st.number_input(label(spec), value=None, step=1, key=key, help=help_text(spec))
    else:
        st.number_input(
            label(spec), value=None, step=0.1, format="%.2f", key=key, help=help_text(spec)
        )
    if error:
        st.caption(f":red[:material/error: {error}]")


def customer_form(errors: dict[str, str] | None = None) -> None:
    """The whole form body: account fields, then one column per calling period; each field's
    message from ``errors`` (feature name → message) is shown under it."""
    errors = errors or {}
    st.markdown("**Account**")
    cols = st.columns(4)
    for i, name in enumerate(ACCOUNT_FIELDS):
        with cols[i % 4]:
            feature_widget(SPECS[name], errors.get(name))
    st.markdown("**Usage in the billing period**")
    for col, (period, title) in zip(st.columns(len(PERIODS)), PERIODS):
        with col:
            st.caption(title)
            for what in ("minutes", "calls", "charge"):
                name = f"total_{period}_{what}"
                feature_widget(SPECS[name], errors.get(name))


def current_values() -> dict[str, Any]:
    """The form's values as a raw customer dict (canonical names)."""
    return {spec.name: st.session_state.get(widget_key(spec.name)) for spec in FEATURES}


def validate(
    values: dict[str, Any],
) -> tuple[dict[str, Any] | None, dict[str, str], list[str]]:
    """Check a customer against the schema before sending it.

    Returns:
        The JSON-ready customer (or ``None``), the blocking errors by field (an emptied number
        is "required", never 0), and non-blocking warnings.
    """
    warnings: list[str] = []
    if values.get("voice_mail_plan") == "no" and (values.get("number_vmail_messages") or 0) > 0:
        warnings.append("Voice-mail messages are set but the customer has no voice-mail plan.")
    warnings.extend(usage_warnings(values))
    errors = {name: "required: enter a value" for name, value in values.items() if value is None}
    try:
        customer = Customer.model_validate(values)
    except ValidationError as exc:
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "?"
            errors.setdefault(name, str(err["msg"]))
        return None, errors, warnings
    return customer.model_dump(mode="json"), errors, warnings
