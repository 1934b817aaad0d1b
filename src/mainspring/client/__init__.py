"""The Python API for application code: manage jobs by name from your own process.

from mainspring.client import Mainspring
ms = Mainspring.from_settings()          # MAINSPRING_* environment, like every role
ms.upsert_job("weekly-inspection", "inspect.run", cron="0 8 * * 3",
              timezone="Asia/Shanghai", data_window={"lookback_s": 3 * 86400,
              "as_kwargs": True})

Over HTTP, from anywhere: ``mainspring.Client(url, token=...)`` (``client.http``).
"""

from mainspring.client.errors import ClientError
from mainspring.client.http import Client
from mainspring.client.local import JobInfo, Mainspring

__all__ = ["Client", "ClientError", "JobInfo", "Mainspring"]
