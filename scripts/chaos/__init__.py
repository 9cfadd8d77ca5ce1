"""`make chaos`: faults injected while changes flow; the pipeline must recover by itself.

faults      what each fault does (`FAULTS`)
background  the load and the sink watcher that run through every fault
results     what is reported per fault
runner      the rounds, the recovery probes, the verification and the command
            (`python -m scripts.chaos`)
"""
