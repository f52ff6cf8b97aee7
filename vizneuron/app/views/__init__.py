"""The app's panels, one module each; every panel is `show(ctx)`. The shell's `VIEWS` table says
which panels make which view."""
