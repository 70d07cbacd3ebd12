"""Global-batch semantics over torch.distributed ranks (flyt.md 2.7), and the identity when running alone.

Every rank holds a contiguous slice of the global upstream batch, of the downstream batch and of the class
prompts.  Embeddings are all-gathered so that every rank computes the *same* global loss; in the gathered
tensor only the rank's own slice stays connected to its graph (the others are constants), so a backward pass
gives each rank the exact gradient of the global loss through its own examples, and a SUM all-reduce of the
parameter gradients completes it (flyt.md trap 10: averaging would be wrong).  Quantities applied after the
gather (logit scales) get the full gradient on every rank already and are not reduced.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Group:
    """This process's place among ``world`` ranks (``world == 1``: no torch.distributed calls at all)."""

    rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls) -> "Group":
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    def bounds(self, n: int, rank: int | None = None) -> tuple[int, int]:
        """[start, stop) of ``rank``'s contiguous share of ``n`` rows (shares differ by at most one)."""
        r = self.rank if rank is None else rank
        base, extra = divmod(n, self.world)
        start = r * base + min(r, extra)
        return start, start + base + (1 if r < extra else 0)

    def share(self, n: int) -> slice:
        return slice(*self.bounds(n))

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's rows (rank order); the result carries no gradient."""
        return self.gather_rows(x.detach()).detach()

    def gather_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's rows; this rank's slice stays connected to ``x``'s graph."""
        if self.world == 1:
            return x
        import torch.distributed as dist

        # on the tensor's device: nccl gathers CUDA tensors only
        sizes = [torch.zeros(1, dtype=torch.int64, device=x.device) for _ in range(self.world)]
        dist.all_gather(sizes, torch.tensor([len(x)], dtype=torch.int64, device=x.device))
        longest = int(max(s.item() for s in sizes))
        padded = torch.zeros((longest, *x.shape[1:]), dtype=x.dtype, device=x.device)
        padded[:len(x)] = x.detach()
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        pieces = [p[:int(s.item())] for p, s in zip(parts, sizes)]
        pieces[self.rank] = x
        return torch.cat(pieces)

    def sum_(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """All-reduce (SUM) every tensor in place, in sorted-name order (the same on every rank)."""
        if self.world > 1:
            import torch.distributed as dist

            for name in sorted(tensors):
                dist.all_reduce(tensors[name], op=dist.ReduceOp.SUM)
        return tensors

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


SINGLE = Group()
