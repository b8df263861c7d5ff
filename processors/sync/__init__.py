"""Full and incremental sync: command decisions (`decisions`) and the nightly schedule
(`schedule`), both pure; the wiring runs what they decide."""
