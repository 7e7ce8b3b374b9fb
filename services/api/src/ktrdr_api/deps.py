"""What the controllers get injected, named once (Litestar's explicit named dependencies)."""

from __future__ import annotations

from litestar.di import NamedDependency

from ktrdr_api.config import ApiSettings
from ktrdr_api.event_log import EventLog
from ktrdr_api.gateway import Gateway
from ktrdr_api.overview import OverviewHub
from ktrdr_api.overview_schemas import OverviewOut

GatewayDep = NamedDependency[Gateway]
EventsDep = NamedDependency[EventLog]
SettingsDep = NamedDependency[ApiSettings]
OverviewDep = NamedDependency[OverviewHub[OverviewOut]]
