"""Vaccination room: the children's immunization schedule (NIP 2021 as data) and dose checks."""

from edge.vaccination.schedule import (
                                       AdministrationCheck,
                                       Age,
                                       DoseSpec,
                                       GivenDose,
                                       NextDose,
                                       Reason,
                                       Schedule,
                                       ScheduleError,
                                       Series,
                                       Status,
                                       Vaccine,
                                       check_administration,
                                       load_schedule,
                                       next_doses,
                                       parse_schedule,
)

__all__ = ["Age", "AdministrationCheck", "DoseSpec", "GivenDose", "NextDose", "Reason", "Schedule", "ScheduleError",
           "Series", "Status", "Vaccine", "check_administration", "load_schedule", "next_doses", "parse_schedule"]
