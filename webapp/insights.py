"""The Failures, Upcoming and Lateness views in the dashboard: why mail fails, grouped by cause,
what will go out over the next hours and days against the limits (tasks/domain/failures.py and
tasks/domain/upcoming.py), and how late what went out was sent, per minute (drawn by
webapp/static/charts.js from /charts/lateness.json), scoped as the list is (the organization,
or "mine")."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request

from tasks.domain import failures, orgs, upcoming
from tasks.ops import charts
from webapp import ext
from webapp.auth import login_required, membership, scope

bp = Blueprint("insights", __name__)


@bp.get("/failures")
@login_required
def failures_view() -> Any:
    """Show the failed, uncertain and bounced emails of the last 7 days, grouped by cause."""
    mine = request.args.get("mine") == "1"
    found = failures.report(ext.conn(), scope(mine=mine))
    may_act = membership().may(orgs.Action.SEND)
    return render_template("failures.html", report=found, mine=mine, sparkline=failures.sparkline, may_act=may_act)


@bp.get("/upcoming")
@login_required
def upcoming_view() -> Any:
    """Show how many emails go out per hour (24 hours) and per day (7 days), against the limits."""
    mine = request.args.get("mine") == "1"
    found = upcoming.forecast(ext.conn(), scope(mine=mine), ext.settings())
    top = max([s.count for s in found.hours] + [found.limits.transport_hour or 0, found.limits.user_hour or 0, 1])
    return render_template("upcoming.html", forecast=found, mine=mine, top=top)


@bp.get("/lateness")
@login_required
def lateness_view() -> Any:
    """Show how late emails were sent, per minute, over the last hour or 24 hours."""
    mine = request.args.get("mine") == "1"
    chart_range = request.args.get("range", "1h")
    if chart_range not in charts.RANGES:
        chart_range = "1h"
    return render_template("lateness.html", mine=mine, chart_range=chart_range)
